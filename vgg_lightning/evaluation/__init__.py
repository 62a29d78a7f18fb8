"""The paper's test protocols (Sec. 3.2), the evaluator that runs them over a split on any number of
devices, its metrics, and what task=eval does."""
