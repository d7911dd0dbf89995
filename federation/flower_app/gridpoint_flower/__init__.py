"""Entry modules of gridpoint's Flower App (see federation/)."""
