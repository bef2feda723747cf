"""The judge: derived error budgets (``tolerance``), the referee that compares the hand gradient
with the oracles (``referee``), and certification over many cases (``certify``)."""
