"""xlrm: cross-lingual transfer of reward models, as a library behind a papermill notebook suite.

Modules (imports flow one way, top to bottom):

- ``langs``      language codes (ISO 639-1 <-> FLORES-200)
- ``store``      cache directory, fingerprints, atomic writes; ``hub``: the commit a hub id means now
- ``backbones``  offline converters for packaged pretrained models (me5-small, gemma3-270m)
- ``models``     ``load_reward_model`` / ``load_backbone`` and text formatting
- ``data``       ``load_pairs``: one canonical preference-pair schema for every source
- ``train``      Bradley-Terry reward-model training
- ``evaluate``   scoring, RewardBench accuracy, transfer matrices
- ``stats``      item bootstrap CIs and paired sign-flip tests
- ``translate``  translate-train (apertium / transformers MT) with a disk cache
- ``probe``      representation shift: CKA, singular-value ratio, norms, UMAP
- ``align``      best-of-n selection and win rates; ``judges``: generative judges
- ``plots``      plotly figures (return figures, never write files)
- ``grid``       a params file's cells; ``preflight``: their checks; ``kernels``: one papermill execution
- ``runner``     keys, scheduling, resume, summary; ``cli``: the ``xlrm`` command; ``nbclean``: clean notebooks
"""

__version__ = "0.1.0"
