"""Learning: insights learned from training problems (``learn``), the library-evolution job
(``evolve``) and near-duplicate checks against test items (``dedup``). Builds on ``agent``."""
