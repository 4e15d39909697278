"""Images: decoding photo files (``decode``), where images come from (``sources``: files,
folders, globs, URLs through the hardened ``fetch``) and a drawing of the steps from a photo to a
model's input (``steps_figure``). Each kind's own pipeline from a photo to its input lives in the
kind's folder (``apparel.kinds.fashion_mnist.pipeline``, ``apparel.kinds.photo.pipeline``)."""
