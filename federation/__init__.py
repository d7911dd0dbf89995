"""gridpoint's federation: training one model together over a real Flower deployment.

The code is organized as follows:

- update_signing.py: Ed25519 signatures over a digest of each weight update, and their check.
- model_state.py: the model both sides build from the study, and its weights as Flower arrays.
- client_app.py: the ClientApp: fine-tune or evaluate on the member's private pipeline, sign.
- server_app.py: the ServerApp: verify every update against the host's trusted peers, aggregate.
- rounds.py: the round loop: wait for members, train, evaluate on every member's data, checkpoint.
- member_failures.py: the SuperLink's error replies for a member that failed, set apart and
  named by that member's gridpoint node id (both kinds of round).
- flower_nodes.py: which Flower node id each trusted peer's SuperNode was registered under,
  as the host recorded it (flower-nodes.json).
- secure_round.py: a training round under Flower's SecAgg+ (the host sees only the sum),
  every stage's reply checked against the member's signature.
- privacy.py: DP-FedAvg for `fed host --dp`: members clip (to a fixed or an adaptive clip),
  the host adds Gaussian noise, dp-accounting says the member-level epsilon.
- checkpoint.py: the global model and round state after every round, written atomically (resume).
- flower_app/: the Flower App bundle (pyproject + thin entry modules) that `flwr run` ships.
- flower_certs.py: SuperLink TLS certificate and SuperNode auth keys from gridpoint identities.
- processes.py: starting and stopping the Flower processes, with the settings they need.
- app_forks.py: the fork servers of a member and a host: each message's ClientApp and each
  run's ServerApp forked from one process that imported Flower, torch and transformers once,
  not started cold by Flower.
- app_shim.py: the `flwr-clientapp` (`flwr-serverapp`) first on the SuperNode's (SuperLink's)
  PATH that asks the fork server for the app (standard library only; runs the installed one
  when none answers).
- names.py: what a federation name may be (a folder under the home and a word of the join command).
- host.py / member.py: `fed host` and `fed join`: start and watch the Flower processes.
- publish.py: the finished federation handed to the node's publishing service (kind federated).
- global_model.py: the final global model, kept by the host and pulled by every member.
- cli.py: the `fed` command group, registered through the `gridpoint.commands` entry point
  (node never imports this package).

Only weights (or LoRA adapters) and coarse metrics leave a member; its data never does.
"""
