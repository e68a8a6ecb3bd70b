"""Hand-written Vision Transformer building blocks and the masked L1 + SSIM loss (Exercise 2).

This package is named ``nn`` as on the exercise sheet; inside it PyTorch's ``torch.nn`` is
imported as ``tnn`` so the two never get confused.
"""
from nn.attention import (AttentionBlock, FeedForwardLayer, PatchEmbedding, ReversePatchEmbedding,
                          SelfAttentionLayer)
from nn.loss import masked_l1_ssim_loss, ssim

__all__ = ["AttentionBlock", "FeedForwardLayer", "PatchEmbedding", "ReversePatchEmbedding",
           "SelfAttentionLayer", "masked_l1_ssim_loss", "ssim"]
