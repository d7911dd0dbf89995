"""gridpoint's node: the long-lived daemon and the commands around it.

The code is organized as follows:

- identity.py, tls.py, home.py, config.py: who a node is and where it keeps itself.
- envelope.py, request_auth.py: signatures over exact bytes (records; live requests).
- run_record.py, serde.py: the public record (domain type, rules) and its wire form.
- store.py (contract), store_models.py, sql_store.py, migrations/: persistence.
- query_filter.py: the catalog filter language.
- catalog.py: the only ways records enter the catalog (publish, admit).
- server.py, interceptors.py, rpc_errors.py: the gRPC service peers call.
- peer_client.py, peers.py, sync.py, live_query.py: calling peers.
- daemon.py: `node start`; cli.py, cli_network.py, output.py: the command line.
- rpc/v1/: generated protobuf code (tools/gen_proto.py), never edited by hand.

The node never imports torch, transformers or flwr at module level: trainers/ is imported
lazily by the commands that run studies, and Flower runs as separate processes.
"""

__version__ = "0.1.0"
