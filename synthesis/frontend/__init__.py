"""Pure-Python GPT-SoVITS text and audio frontend: text normalisation, G2P and model features (no Django)."""
