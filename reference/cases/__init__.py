"""The cases: hypothesis strategies for networks and batches (``strategies``) and for optimizer
problems (``optim_strategies``), architecture pools (``pools``), and the bug catalog
(``bug_catalog``)."""
