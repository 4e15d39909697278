"""The Fashion-MNIST kind: 28×28 grayscale arrays, light garment on black, in [0, 1]."""
