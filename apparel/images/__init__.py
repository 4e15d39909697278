"""Images: decoding photo files (``decode``), the Fashion-MNIST photo pipeline (``photos``),
where images come from (``sources``: files, folders, globs, URLs through the hardened ``fetch``),
and the product-photo check (``photo_check``)."""
