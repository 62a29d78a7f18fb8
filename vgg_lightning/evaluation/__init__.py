"""The paper's test protocols (Sec. 3.2), the evaluator that runs them over a split on any number of devices,
its metrics, the Predictor, and Appendix B's descriptors and linear SVMs. No config is read here: the tasks
(`vgg_lightning.tasks`) give these their settings."""
