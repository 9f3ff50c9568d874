"""The Lightning layer, the only one that imports Lightning: LitGPT, GPTDataModule, the
callbacks, TensorBoard, run folders and the command line's checkpoint resolution; the steps
of fine-tuning (finetune.py: DPO) and of reinforcement learning (grpo.py: GRPO)."""
