"""From stored instances to delivered results: volumes, lung mask, detection, the crop,
result objects, the Celery tasks and the delivery SCU. May import ``db`` and ``model``.
"""
