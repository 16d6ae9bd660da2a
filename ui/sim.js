// Drives `meridian sim` from the page, with the prompt's own commands, through
// the region's `POST /v1/sim/command` (present only when sim configured it).
import { api } from '/ui/api.js';

/** Builds the command of a button from the selected regions. */
function commandOf(action, a, b, latency) {
  switch (action) {
    case 'cut': return `cut ${a} ${b}`;
    case 'latency': return `latency ${latency} ${a} ${b}`;
    case 'heal': return 'heal';
    default: return `${action} ${a}`;
  }
}

export function setupSim(section, regions) {
  section.hidden = false;
  const [selA, selB] = [section.querySelector('#sim-a'), section.querySelector('#sim-b')];
  for (const [sel, pick] of [[selA, 0], [selB, 1]]) {
    sel.replaceChildren(...regions.map((r) => new Option(r, r)));
    sel.selectedIndex = Math.min(pick, regions.length - 1);
  }
  const output = section.querySelector('#sim-output');
  const run = async (command) => {
    output.textContent = `> ${command}\n…`;
    try {
      const res = await api('/v1/sim/command', { method: 'POST', body: { command } });
      output.textContent = `> ${command}\n${res.output}`;
    } catch (err) {
      output.textContent = `> ${command}\n${err.message}`;
    }
  };
  for (const button of section.querySelectorAll('button[data-sim]')) {
    button.addEventListener('click', () => {
      const latency = section.querySelector('#sim-latency').value.trim() || '200ms';
      void run(commandOf(button.dataset.sim, selA.value, selB.value, latency));
    });
  }
  section.querySelector('#sim-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const line = section.querySelector('#sim-command').value.trim();
    if (line) void run(line);
  });
}
