// The seed spec's example client, unchanged in what it reads: connect to
// ws://HOST:PORT/network?access_token=TOKEN, print notification.peer_id on
// peer_connected and the received message on message_received.
//
// Usage: node seed_client.js ws://127.0.0.1:8470/network?access_token=TOKEN [COUNT]
// Exits 0 after COUNT message_received notifications (default: run for ever).
const WebSocket = require('ws');

const url = process.argv[2];
const count = process.argv[3] ? parseInt(process.argv[3], 10) : Infinity;
let received = 0;

const ws = new WebSocket(url);

ws.on('open', () => {
  console.log('Connected to the node');
});

ws.on('message', (data) => {
  const notification = JSON.parse(data);
  switch (notification.type) {
    case 'peer_connected':
      console.log('Peer connected: ' + notification.peer_id);
      break;
    case 'peer_disconnected':
      console.log('Peer disconnected: ' + notification.peer_id);
      break;
    case 'message_received':
      console.log('Message from ' + notification.peer_id + ': ' +
                  JSON.stringify(notification.message));
      received += 1;
      if (received >= count) {
        ws.close();
      }
      break;
    default:
      break;
  }
});

ws.on('close', () => {
  console.log('Disconnected');
  process.exit(received >= count ? 0 : 2);
});

ws.on('error', (err) => {
  console.error('WebSocket error: ' + err.message);
  process.exit(1);
});
