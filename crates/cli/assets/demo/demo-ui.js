// Toasts and progress bars for lambda-ws messages, without a framework.

import { safeHref } from '/client/websocket-manager.js';

export function showToast(container, { level = 'info', title, message, timeout_ms = 4000, action_url }) {
  const toast = document.createElement('div');
  toast.className = `toast toast-${level}`;
  toast.setAttribute('role', level === 'error' ? 'alert' : 'status');
  if (title) {
    const heading = document.createElement('strong');
    heading.textContent = title;
    toast.append(heading, document.createElement('br'));
  }
  toast.append(document.createTextNode(message));
  const href = safeHref(action_url);
  if (href) {
    const link = document.createElement('a');
    link.href = href;
    link.textContent = ' Open';
    toast.append(link);
  }
  container.append(toast);
  if (timeout_ms > 0) setTimeout(() => toast.remove(), timeout_ms);
  return toast;
}

export function updateProgress(container, { task_id, percent, message, done }) {
  let row = container.querySelector(`[data-task="${CSS.escape(task_id)}"]`);
  if (!row) {
    row = document.createElement('div');
    row.className = 'task';
    row.dataset.task = task_id;
    row.innerHTML = '<span class="task-name"></span><progress max="100"></progress><span class="task-text"></span>';
    row.querySelector('.task-name').textContent = task_id;
    container.append(row);
  }
  row.querySelector('progress').value = percent;
  row.querySelector('.task-text').textContent = `${percent}%${message ? ` · ${message}` : ''}`;
  row.classList.toggle('done', Boolean(done));
  return row;
}
