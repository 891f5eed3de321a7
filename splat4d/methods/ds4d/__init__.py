"""DS4D: video-to-4D with dynamic-static feature decoupling (DSFD) and temporal-spatial similarity fusion
(TSSF) on the deformable 4D Gaussians (`../shared/papers/ds4d.txt`, §3)."""
