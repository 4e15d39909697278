"""Benchmark studies: axes and study files (``spec``), the Optuna storage and trial claiming
(``store``), running trials (``study``), tables and charts (``report``)."""
