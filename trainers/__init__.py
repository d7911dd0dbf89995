"""gridpoint's trainers: local fine-tuning and tuning studies on an organization's own data.

The code is organized as follows:

- study_config.py: the study file (TOML) and its checks, before anything trains.
- pipeline.py: resolving and calling the organization's private data pipeline.
- tasks/: one module per task type (text, causal-LM SFT, token, image classification):
  its data, Auto class, batches, metrics and descriptor.
- descriptor.py: coarse task meta-features computed from the private data.
- word_tokenizer.py: tokenizers for models built from a config.
- data/: the public WordPiece vocabulary that federated config-built models tokenize with.
- models.py: loading a checkpoint, an adapter folder or a config-built model, offline only.
- batching.py: length-grouped, shuffled batches.
- finetune.py: one fine-tuning run with its learning curve, on GPU (bf16) or CPU.
- devices.py: checking `--devices` before anything runs.
- search_space.py: the one mapping between search dimensions and Optuna's distributions.
- transfer/: the warm-start maths (transfer sampler, curve pruner), knowing nothing of nodes.
- study_storage.py: the Optuna RDB storage of studies, with heartbeats.
- study_workers.py: the study's worker lock: who works on a study now (file or advisory lock).
- privacy/: the privacy mode: DP-SGD by Opacus, released evaluation values, accounting by
  dp-accounting, each trial's noise calibrated to its share of the study's budget.
- study.py: an Optuna study whose trials are fine-tuning runs; one per device, workers,
  progress, pruning, resume.
- importance.py: hyperparameter importances by Optuna's evaluator, as a child process the
  web UI runs (`python -m gridpoint.trainers.importance`).
- saved_model.py: a trained model handed to the node, and the folder it is saved as.
- results.py: the records these produce (private: everything; the node decides what leaves).

trainers imports nothing of gridpoint's node or federation and neither grpc nor flwr: it
knows nothing of peers, signatures or the wire. Its results go to a sink it is handed.
"""
