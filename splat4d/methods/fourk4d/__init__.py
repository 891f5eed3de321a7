"""4K4D (issue 9): space carving so far (`carve`); the method itself is not registered yet."""
