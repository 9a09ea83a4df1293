"""django-eventstream, the Django peer that stores events for resume, set up for comparison."""
