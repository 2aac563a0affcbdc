"""Boxes for images that have only a caption (DOCCI, the paper's source): ``lgt detect``.

- ``phrases.py``: the object phrases of a caption (deterministic rules, or a part-of-speech tagger), the queries;
- ``detector.py``: a zero-shot detector through ``transformers`` (Grounding DINO, OWLv2), and the optional tagger;
- ``boxes.py``: from raw detections to objects: a score threshold, then NMS among names of one head noun;
- ``command.py``: ``lgt detect`` itself: read a source, plan passes, the detection cache, write JSON Lines;
- ``provenance.py``: the ``detector`` field of every row, and the dataset card's Grounding section.

The stage-1 rule that keeps questions about detected boxes to what their scores make safe lives with the templates
(``synthesis/stage1.py``, ``CONFIDENT_SCORE``).
"""
