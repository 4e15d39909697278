"""The store model: a whole fashion store's products as Shopify categories.

A garment head fine-tuned on store photos, the pretrained backbone's own ImageNet classifier for
what no photo here shows (watches, sunglasses, wallets, backpacks…, and what is not apparel at
all), one probability per class, each class a node of Shopify's taxonomy (``classes.csv``).
"""
