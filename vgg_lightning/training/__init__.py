"""The paper's training recipe (Sec. 3.1) as a LightningModule, its callbacks, and the global batch on any number
of devices. No config is read here: task=train (`vgg_lightning.tasks.train`) gives them their settings."""
