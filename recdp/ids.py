"""The reserved categorical ids, the same in every vocabulary, shard, model and exported bundle."""

MISSING_ID = 0  # the value is absent (an empty field)
OOV_ID = 1  # the value is not in the vocabulary (rarer than the frequency threshold, or new since)
FIRST_VALUE_ID = 2  # the first id a vocabulary gives to a value
