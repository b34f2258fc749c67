"""Recovery: the conversations where trust breaks — a user who says "yep" instead of "looks good",
corrects a value, asks a side question, leaves and comes back — derived from written cases
(``operators``, ``derive``) and scored on reaching the same end (the ``recovery`` scorer)."""
