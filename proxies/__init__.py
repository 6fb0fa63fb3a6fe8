"""Proxy models: small Laguna-style MoE transformers and their training (Muon + AdamW)."""
