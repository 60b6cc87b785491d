"""The shared cache's table (settings.CACHES: a database cache by default), so `migrate` alone sets up a site."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    # Does nothing for other cache backends (Redis) or when the table exists.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("classifier", "0004_seed_spanish")]
    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
