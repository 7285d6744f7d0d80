"""Strings Django's own admin templates show that Django 5.2's zh_Hans catalogue leaves untranslated.

Django's admin catalogue (django/contrib/admin/locale/zh_Hans/LC_MESSAGES/django.po) has no entry for these
msgids, so a staff member who chose Chinese would see them in English: the column headings every app table of the
admin index carries for screen readers (admin/app_list.html), the "Error:" the title gets when a form has errors,
and a few texts of the login, password-reset and add-user pages.

Nothing imports this module. It exists so that `makemessages` extracts these msgids into Herald's own catalogue
(locale/zh_Hans/LC_MESSAGES/django.po), which Django consults before the admin's (LOCALE_PATHS come first): there
they get their translation, and the admin's templates, asking for the same msgids, receive it. The msgids must stay
exactly as the templates write them (curly apostrophes included). Drop an entry once Django's catalogue has it.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy

DJANGO_ADMIN_STRINGS = (
    # admin/app_list.html: the headings of each app's table on the index and in the navigation sidebar
    gettext_lazy("Model name"),
    gettext_lazy("Add link"),
    gettext_lazy("Change or view list link"),
    # admin/change_form.html, change_list.html, login.html, registration/*: the page title when a form has errors
    gettext_lazy("Error:"),
    # admin/login.html
    gettext_lazy("Forgotten your login credentials?"),
    # registration/password_reset_email.html
    gettext_lazy("In case you’ve forgotten, you are:"),
    # admin/auth/user/add_form.html
    gettext_lazy("After you’ve created a user, you’ll be able to edit more user options."),
)
