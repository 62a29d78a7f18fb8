"""The paper's training recipe (Sec. 3.1) as a LightningModule, its callbacks, and what task=train does."""
