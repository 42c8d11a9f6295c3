"""Vertical federated logistic regression, one model family (``fedcredit.protocol.family``).

- ``messages``: what travels between the parties and the key holder, and who may read it;
- ``partner``: a party's weights over its aligned columns (``FeatureParty``);
- ``lender``: the labels, the intercept, residuals, the secure loss (``LabelParty``);
- ``encoding``: one-hot text columns and the encoders a model part stores;
- ``schedule``: the family's rounds; ``local``: those rounds in one process;
- ``family``: the family object the registry holds; ``settings``: its table's dataclass.

Its modules import each other, never this file.
"""
