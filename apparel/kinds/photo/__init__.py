"""The photo kind: RGB photos padded to a white square, N×N, pixel values 0–255 (the store
model of ``apparel.store`` is one, with a taxonomy head over its garment classes)."""
