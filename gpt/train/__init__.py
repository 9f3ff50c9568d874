"""The Lightning layer, the only one that imports Lightning: LitGPT, GPTDataModule, the
callbacks, TensorBoard, run folders and the command line's checkpoint resolution."""
