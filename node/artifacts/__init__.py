"""Models as signed artifacts: kept by tune and fed, listed, exported, shared and pulled.

The code is organized as follows:

- manifest.py: the signed manifest (files, sizes, per-chunk SHA-256, base model, method,
  record id), its rules, and the content-derived artifact id.
- store.py: ArtifactStore, the models held in a node home (folders under HOME/models, rows
  in the node's store); NewArtifact is what a producer hands over.
- service.py: the gridpoint.v1.Artifacts service (who may fetch what; bounded streams and
  download slots).
- keep.py: a study's best K kept models; starting a study from a kept model.

Pulling from a peer runs over the peer transport: gridpoint.node.peers.artifact_pull.

Never imports torch or transformers: the daemon serves from here. Producers (the trainers'
save_trained, the federation) write a from_pretrained folder and hand it to
ArtifactStore.add().
"""

from gridpoint.node.artifacts.manifest import ArtifactFile, Manifest
from gridpoint.node.artifacts.store import Artifact, ArtifactStore, NewArtifact

__all__ = ["Artifact", "ArtifactFile", "ArtifactStore", "Manifest", "NewArtifact"]
