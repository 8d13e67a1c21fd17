"""Networks and losses written once against the ops protocol and shared by tasks: small MLPs, CNNs and
ResNet-32 (:mod:`.nn`), byte-level text models (:mod:`.byte_models`), the DARTS cell search space
(:mod:`.darts_cells`), the pieces of the data-reweighting tasks (:mod:`.reweight`), and a local BERT checkpoint read
into the transformer's parameter names (:mod:`.checkpoint`).

May import: ``contract`` and ``engine`` (pytrees). Never ``cli``, ``run``, ``certify``, ``report``, ``measure`` or
``plugins``: a model is a pure function of (ops, params, inputs).
"""
