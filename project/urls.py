from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from django.views.i18n import JavaScriptCatalog

from project import views
from project.login import ThrottledLoginView, admin_login

urlpatterns = [
    path("", views.home, name="home"),
    # Browsers ask every site for /favicon.ico, whatever the page says.
    path("favicon.ico", RedirectView.as_view(url=static("project/favicon.svg"), permanent=True)),
    path("shop/", views.shop, name="shop"),
    # The demo pages' JavaScript translations, and the language switch (set_language).
    path(
        "jsi18n/",
        JavaScriptCatalog.as_view(packages=["durable_sessions", "project"]),
        name="javascript-catalog",
    ),
    path("i18n/", include("django.conf.urls.i18n")),
    path("chat/new/", views.new_chat, name="chat-new"),
    path("chat/<uuid:session_id>/", views.chat, name="chat"),
    path("chat/continue/<str:token>/", views.continue_chat, name="chat-continue"),
    path("examples/ai-sdk/", views.aisdk_example, name="aisdk-example"),
    path("examples/ai-sdk/<uuid:session_id>/", views.aisdk_example_chat, name="aisdk-example-chat"),
    path("ds/", include("durable_sessions.urls")),
    # The Durable Streams protocol: /v1/stream/<path> and /v1/session/<id>.
    path("", include("durable_sessions.streams.urls")),
    path("console/", include("handoff_console.urls")),
    # Before Django's own login URL, which it replaces.
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
]
