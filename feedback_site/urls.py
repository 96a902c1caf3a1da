"""Top-level URLs.  Each app owns its own ``urls.py`` (pages) and ``api_urls.py`` (REST)."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("annotate/", include("annotations.urls")),
    path("research/", include("rlhf.urls")),
    path("retarget/", include("rlhf.retarget.urls")),
    path("api/", include("annotations.api_urls")),
    path("api/rlhf/", include("rlhf.api_urls")),
    path("api/retarget/", include("rlhf.retarget.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", views.api_docs, name="api-docs"),
]

handler400 = "feedback_site.errors.bad_request"
handler403 = "feedback_site.errors.permission_denied"
handler404 = "feedback_site.errors.page_not_found"
handler500 = "feedback_site.errors.server_error"
