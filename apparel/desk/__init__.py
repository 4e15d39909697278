"""The merchant's desk: a catalog categorised as a job a person follows and corrects in the browser.

``jobs`` keeps each uploaded CSV with its state, its products' suggestions and the merchant's
decisions on disk; ``runner`` classifies a job's products in rounds through ``categorize_catalog``
(the photos cached, so a restart resumes) and writes the download with the same function, the
decisions passed in. ``apparel.serve.desk`` serves it as the page ``/desk``.
"""
