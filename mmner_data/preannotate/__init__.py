"""``mmner-data preannotate``: model predictions (spans with confidences) into the store."""
