"""zoo's built-in plugins that go beyond Lesson 6: stateful RNNs, GRU, LSTM, AWD-LSTM and a transformer.

The RNNs read the corpus as contiguous streams and carry their hidden state from one
batch to the next (truncated backpropagation through time), as the course went on to do.
The transformer reads windows of 64 characters and is sampled through a key/value cache.
`models.py` holds the RNN architectures, `transformer.py` the transformer; each other module
registers one model's spec.
"""

COURSE = "fast.ai 2018 course, lesson 7 notebook (Nietzsche, lowercased, its own split)"
NOTE = "the course lowercased the text and used its own split; zoo keeps the case and validates on the end of the text (--val-frac)"
