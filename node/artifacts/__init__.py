"""Models as signed artifacts: kept by tune and fed, listed, exported, shared and pulled.

The code is organized as follows:

- manifest.py: the signed manifest (files, sizes, per-chunk SHA-256, base model, method,
  record id), its rules, and the content-derived artifact id.
- store.py: ArtifactStore, the models held in a node home (folders under HOME/models, rows
  in the node's store); NewArtifact is what a producer hands over.
- service.py: the gridpoint.v1.Artifacts service (who may fetch what; bounded streams and
  download slots).
- private_parts.py: what of a kept model was learnt from private data (a vocabulary, label
  names), which `model share` refuses to send unless told to.
- keep.py: a study's best K trial models kept; a study started from a kept model.
- registry.py: the model registry: names, numbered versions, aliases (private to the node).
- hooks.py: the promotion hook, a local command run when an alias changes (bounded in time).
- export.py: `model export`: a held model copied out to a folder and signed there.
- model_signature.py: the OpenSSF model-signing signature of an exported folder, and the
  statement binding its key to the node identity; verify_folder() checks both.

Pulling from a peer runs over the peer transport: gridpoint.node.peers.artifact_pull.

Never imports torch or transformers: the daemon serves from here. Producers (the trainers'
save_trained, the federation) write a from_pretrained folder and hand it to
ArtifactStore.add().
"""

from gridpoint.node.artifacts.manifest import ArtifactFile, Manifest
from gridpoint.node.artifacts.store import Artifact, ArtifactStore, NewArtifact

__all__ = ["Artifact", "ArtifactFile", "ArtifactStore", "Manifest", "NewArtifact"]
