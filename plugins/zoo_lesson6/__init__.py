"""zoo's built-in plugins for the character models of fast.ai's 2018 Lesson 6, "RNNs from scratch".

`models.py` holds the six architectures as the lesson wrote them; each other module is
one plugin (one entry point) that registers one model's spec. Plugin modules never
import torch, so listing models stays fast.
"""

LESSON = "fast.ai 2018 Lesson 6, lesson6-rnn.ipynb (Nietzsche, random 20% validation rows)"
DEFAULTS = {"n_fac": 42, "n_hidden": 256}
