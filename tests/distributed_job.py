"""Run by tests/test_index_distributed.py, in one process or under torchrun: the index, minibatch CKA and embedding
features of a folder through cnnwidgets.distributed; rank 0 saves the CKA matrix and features to --result."""
import argparse

import numpy as np
import torch

import cnnwidgets as cw
from cnnwidgets import distributed as D

p = argparse.ArgumentParser()
p.add_argument("--images")
p.add_argument("--out")
p.add_argument("--result", default=None)
p.add_argument("--stop", type=int, default=None)
a = p.parse_args()
torch.set_num_threads(1)
w = D.init("gloo")
probe = cw.Probe(cw.load_model(), input_size=96)
ix = D.build_index(probe, a.images, ["_blocks.2", "_blocks.9", "_fc"], k=4, batch_size=8, out=a.out, shard_images=8,
                   stop=a.stop)
if a.result:
    c = D.layer_similarity(probe, a.images, ["_blocks.2", "_blocks.5", "_blocks.9", "_blocks.14"], batch_size=8)
    f = D.features(probe, a.images, ["_blocks.9"], batch_size=8)
    if w.rank == 0:
        np.savez(a.result, cka=c.matrix, features=f["_blocks.9"], images=ix.num_images, world=w.size)
if w.size > 1:
    torch.distributed.destroy_process_group()
