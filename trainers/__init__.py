"""gridpoint's trainers: local fine-tuning and tuning studies on an organization's own data.

The code is organized as follows:

- study_config.py: the study file (TOML) and its checks, before anything trains.
- pipeline.py: resolving and calling the organization's private data pipeline.
- descriptor.py: coarse task meta-features computed from the private data.
- models.py: loading a local checkpoint or building a model from a config, offline only.
- finetune.py: one fine-tuning run with its learning curve, on GPU (bf16) or CPU.
- study.py: an Optuna study whose trials are fine-tuning runs; progress, pruning, resume.
- results.py: the records these produce (private: everything; the node decides what leaves).

trainers imports nothing of gridpoint's node or federation and neither grpc nor flwr: it
knows nothing of peers, signatures or the wire. Its results go to a sink it is handed.
"""
