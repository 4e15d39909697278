"""Shop catalogs: Shopify product CSVs categorised from their photos (``catalog``), the class →
taxonomy mapping (``taxonomy``, ``taxonomy.csv``) and the byte-preserving CSV splicer (``splice``)."""
