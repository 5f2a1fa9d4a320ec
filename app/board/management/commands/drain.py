"""`manage.py drain`: closes every WebSocket this host's Daphne processes hold with 4012 ("reconnect
at once"), the step of a rolling deploy between taking the host out of the load balancer and
restarting it (issue 11; ansible/rolling-deploy.yml). Daphne has no drain of its own: a restart
would drop the sockets too, but the clients would see an abnormal close and back off; 4012 tells
board.js to come back at once, and the load balancer sends them to a host that stays.

Every board and job socket is in the group `drain-<hostname>` (board.services.drain_group); one
group_send reaches all of them, whichever Daphne process holds them.
"""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management.base import BaseCommand

from board import services


class Command(BaseCommand):
    help = "Close every WebSocket of this host's Daphne processes with 4012 (reconnect at once)."

    def handle(self, *args, **options):
        group = services.drain_group()
        async_to_sync(get_channel_layer().group_send)(group, {"type": "server.drain"})
        self.stdout.write(f"drain: told the sockets of group {group} to reconnect elsewhere")
