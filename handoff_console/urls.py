from django.urls import path

from handoff_console import views

app_name = "handoff_console"

urlpatterns = [
    path("", views.QueueView.as_view(), name="queue"),
]
