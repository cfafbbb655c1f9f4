"""mmner-data: build multilingual, multimodal NER datasets from crawl to trained baselines."""

__version__ = "0.1.0"
