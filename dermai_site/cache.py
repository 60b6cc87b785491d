"""Django's database cache with an atomic ``incr``, for the throttles' counters."""

import base64
import pickle

from django.core.cache.backends import db
from django.db import connections, router, transaction


class DatabaseCache(db.DatabaseCache):
    """Django's database cache, whose ``incr`` is atomic: the counters of ``classifier.throttles``.

    Django's own ``incr`` reads the value and writes it back in two statements, so two workers
    incrementing the same counter both read the old value and one increment is lost. Here the row is
    locked first, by writing it unchanged (a row lock on PostgreSQL, the write lock on SQLite), and
    the read and the write follow in the same transaction: concurrent increments queue. Like Redis's
    ``INCR``, it keeps the key's expiry.
    """

    def incr(self, key, delta=1, version=None):
        alias = router.db_for_write(self.cache_model_class)
        connection = connections[alias]
        table = connection.ops.quote_name(self._table)
        cache_key, expires = connection.ops.quote_name("cache_key"), connection.ops.quote_name("expires")
        made_key = self.make_and_validate_key(key, version=version)
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET {expires} = {expires} WHERE {cache_key} = %s", [made_key])
            value = self.get(key, self._missing_key, version=version)
            if value is self._missing_key:
                raise ValueError(f"Key {key!r} not found")
            value += delta
            cursor.execute(
                f"UPDATE {table} SET {connection.ops.quote_name('value')} = %s WHERE {cache_key} = %s",
                [self._encode(value), made_key],
            )
        return value

    def _encode(self, value) -> str:
        """A value as Django's database cache stores it (``DatabaseCache._base_set``)."""
        return base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
