"""URLs of the host project: its own pages plus the two apps under prefixes it chooses."""

from django.contrib import admin
from django.urls import include, path

from host_site import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("csrf/", views.csrf, name="csrf"),
    path("chat/", include("durable_sessions.urls")),
    path("console/", include("handoff_console.urls")),
]
