"""Built-in plugins, registered like any installed plugin.

They are listed in ``haulmer_onboarding.hookspecs.BUILTIN_PLUGINS`` and can
be blocked by name like any other.
"""
