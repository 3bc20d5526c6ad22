from django.contrib import admin

from dashboard.login import AdminLoginForm

# The admin's login is throttled like the dashboard's.
admin.site.login_form = AdminLoginForm
