"""ADC-GS (anchor-driven deformable Gaussians with rate-distortion optimisation), in progress: the entropy
model and adaptive quantisation (`entropy_model`) are here; the method itself is not registered yet."""
