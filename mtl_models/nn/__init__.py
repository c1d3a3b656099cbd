"""The network: backbones, task heads, the multi-task model and its checkpoint files."""
